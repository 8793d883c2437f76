//! One cgroup per VM, under a `vmpool` parent: cgroup v2 where its hierarchy has the cpu,
//! memory and pids controllers (most hosts), else the v1 controllers (as on these build
//! machines, whose v2 hierarchy is empty). Created before QEMU starts, removed after it ended.
//!
//! | limit | v2 | v1 |
//! |---|---|---|
//! | CPU | `cpu.max` | `cpu.cfs_quota_us` / `cpu.cfs_period_us` |
//! | memory | `memory.max`, `memory.swap.max` 0, `memory.oom.group` 1 | `memory.limit_in_bytes`, `memory.memsw.limit_in_bytes` |
//! | tasks | `pids.max` | `pids.max` |
//! | disk | `io.max` | `blkio.throttle.*_device` |

use crate::error::{Error, IoContext, Result};
use crate::zone::{Limits, ZoneUsage};
use std::path::{Path, PathBuf};
use uuid::Uuid;

/// Where cgroups are, found in `/proc/self/mountinfo`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hierarchy {
    /// The unified hierarchy, with its mount point.
    V2(PathBuf),
    /// One mount per controller.
    V1 {
        /// The `cpu` controller's mount.
        cpu: PathBuf,
        /// `memory`.
        memory: PathBuf,
        /// `pids`.
        pids: PathBuf,
        /// `blkio`, if mounted.
        blkio: Option<PathBuf>,
    },
}

/// The parent of every VM's cgroup, below each hierarchy's root.
pub const PARENT: &str = "vmpool";
const PERIOD_US: u64 = 100_000;

/// Find the hierarchy to use: v2 when it has cpu, memory and pids, else v1's mounts of them.
pub fn detect() -> Result<Hierarchy> {
    let info = std::fs::read_to_string("/proc/self/mountinfo")
        .ctx(|| "reading /proc/self/mountinfo".into())?;
    let (mut v2, mut v1) = (None, std::collections::BTreeMap::new());
    for line in info.lines() {
        // ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] - FSTYPE SOURCE SUPEROPTS
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let mountpoint = left.split(' ').nth(4).unwrap_or("");
        let mut r = right.split(' ');
        let (fstype, _src, superopts) = (r.next().unwrap_or(""), r.next(), r.next().unwrap_or(""));
        match fstype {
            "cgroup2" => v2 = Some(PathBuf::from(mountpoint)),
            "cgroup" => {
                for c in superopts.split(',') {
                    if matches!(c, "cpu" | "memory" | "pids" | "blkio") {
                        v1.entry(c.to_owned())
                            .or_insert_with(|| PathBuf::from(mountpoint));
                    }
                }
            }
            _ => {}
        }
    }
    if let Some(root) = v2 {
        let have = std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
        let have: Vec<&str> = have.split_whitespace().collect();
        if ["cpu", "memory", "pids"].iter().all(|c| have.contains(c)) {
            return Ok(Hierarchy::V2(root));
        }
    }
    match (v1.remove("cpu"), v1.remove("memory"), v1.remove("pids")) {
        (Some(cpu), Some(memory), Some(pids)) => Ok(Hierarchy::V1 {
            cpu,
            memory,
            pids,
            blkio: v1.remove("blkio"),
        }),
        _ => Err(Error::Unsupported(
            "no cgroup hierarchy with the cpu, memory and pids controllers is mounted (cgroup v2 with them, or v1 mounts of each)".into(),
        )),
    }
}

fn write(dir: &Path, file: &str, value: &str) -> Result<()> {
    let p = dir.join(file);
    std::fs::write(&p, value).ctx(|| format!("writing {value:?} to {}", p.display()))
}

/// A VM's cgroup (one directory in v2, one per controller in v1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cgroup {
    hierarchy: Hierarchy,
    name: String,
}

impl Cgroup {
    /// The cgroup of VM `vm` in `hierarchy`.
    pub fn new(hierarchy: Hierarchy, vm: &Uuid) -> Cgroup {
        Cgroup {
            hierarchy,
            name: format!("vm-{vm}"),
        }
    }

    /// Its directories: the one (v2) or each controller's (v1).
    pub fn dirs(&self) -> Vec<PathBuf> {
        let leaf = |root: &Path| root.join(PARENT).join(&self.name);
        match &self.hierarchy {
            Hierarchy::V2(root) => vec![leaf(root)],
            Hierarchy::V1 {
                cpu,
                memory,
                pids,
                blkio,
            } => [Some(cpu), Some(memory), Some(pids), blkio.as_ref()]
                .into_iter()
                .flatten()
                .map(|r| leaf(r))
                .collect(),
        }
    }

    /// The files a process writes its pid into to join the cgroup.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.dirs().iter().map(|d| d.join("cgroup.procs")).collect()
    }

    /// Whether this is cgroup v2.
    pub fn is_v2(&self) -> bool {
        matches!(self.hierarchy, Hierarchy::V2(_))
    }

    /// The directory holding `file` (v1: the controller it belongs to).
    pub fn dir_of(&self, file: &str) -> PathBuf {
        let leaf = |root: &Path| root.join(PARENT).join(&self.name);
        match &self.hierarchy {
            Hierarchy::V2(root) => leaf(root),
            Hierarchy::V1 {
                cpu,
                memory,
                pids,
                blkio,
            } => match file.split('.').next() {
                Some("memory") => leaf(memory),
                Some("pids") => leaf(pids),
                Some("blkio") => leaf(blkio.as_ref().unwrap_or(cpu)),
                _ => leaf(cpu),
            },
        }
    }

    /// Create it with `limits`; `disk` is the (major, minor) of the block device under the
    /// VM's disk, for disk limits.
    pub fn create(&self, limits: &Limits, disk: Option<(u32, u32)>) -> Result<()> {
        match &self.hierarchy {
            Hierarchy::V2(root) => {
                // Controllers are enabled from the root down; the parent holds no process.
                let want = ["cpu", "memory", "pids", "io"];
                let have =
                    std::fs::read_to_string(root.join("cgroup.controllers")).unwrap_or_default();
                let enable: Vec<String> = want
                    .iter()
                    .filter(|c| have.split_whitespace().any(|h| h == **c))
                    .map(|c| format!("+{c}"))
                    .collect();
                let parent = root.join(PARENT);
                crate::fsutil::mkdirs(&parent)?;
                for d in [root.as_path(), parent.as_path()] {
                    let cur = std::fs::read_to_string(d.join("cgroup.subtree_control"))
                        .unwrap_or_default();
                    let missing: Vec<&String> = enable
                        .iter()
                        .filter(|e| !cur.split_whitespace().any(|c| c == &e[1..]))
                        .collect();
                    if !missing.is_empty() {
                        let line: Vec<&str> = missing.iter().map(|s| s.as_str()).collect();
                        write(d, "cgroup.subtree_control", &line.join(" "))?;
                    }
                }
                let dir = parent.join(&self.name);
                crate::fsutil::mkdirs(&dir)?;
                write(
                    &dir,
                    "cpu.max",
                    &format!(
                        "{} {PERIOD_US}",
                        u64::from(limits.cpu_pct) * PERIOD_US / 100
                    ),
                )?;
                write(&dir, "memory.max", &limits.memory_bytes.to_string())?;
                if dir.join("memory.swap.max").exists() {
                    write(&dir, "memory.swap.max", "0")?;
                }
                if dir.join("memory.oom.group").exists() {
                    write(&dir, "memory.oom.group", "1")?;
                }
                write(&dir, "pids.max", &limits.pids.to_string())?;
                if let (Some(io), Some((maj, min))) = (limits.io, disk) {
                    let v = |n: u64| {
                        if n == 0 {
                            "max".to_string()
                        } else {
                            n.to_string()
                        }
                    };
                    write(
                        &dir,
                        "io.max",
                        &format!(
                            "{maj}:{min} rbps={} wbps={} riops={} wiops={}",
                            v(io.read_bps),
                            v(io.write_bps),
                            v(io.read_iops),
                            v(io.write_iops)
                        ),
                    )?;
                }
            }
            Hierarchy::V1 { .. } => {
                for d in self.dirs() {
                    crate::fsutil::mkdirs(&d)?;
                }
                let cpu = self.dir_of("cpu.cfs_quota_us");
                write(&cpu, "cpu.cfs_period_us", &PERIOD_US.to_string())?;
                write(
                    &cpu,
                    "cpu.cfs_quota_us",
                    &(u64::from(limits.cpu_pct) * PERIOD_US / 100).to_string(),
                )?;
                let mem = self.dir_of("memory.limit_in_bytes");
                write(
                    &mem,
                    "memory.limit_in_bytes",
                    &limits.memory_bytes.to_string(),
                )?;
                if mem.join("memory.memsw.limit_in_bytes").exists() {
                    write(
                        &mem,
                        "memory.memsw.limit_in_bytes",
                        &limits.memory_bytes.to_string(),
                    )?;
                }
                write(
                    &self.dir_of("pids.max"),
                    "pids.max",
                    &limits.pids.to_string(),
                )?;
                if let (Some(io), Some((maj, min))) = (limits.io, disk) {
                    let blk = self.dir_of("blkio.throttle");
                    for (file, n) in [
                        ("blkio.throttle.read_bps_device", io.read_bps),
                        ("blkio.throttle.write_bps_device", io.write_bps),
                        ("blkio.throttle.read_iops_device", io.read_iops),
                        ("blkio.throttle.write_iops_device", io.write_iops),
                    ] {
                        if n > 0 {
                            write(&blk, file, &format!("{maj}:{min} {n}"))?;
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// OOM kills counted in the cgroup (`oom_kill` of memory.events or memory.oom_control).
    pub fn oom_kills(&self) -> u64 {
        let file = if self.is_v2() {
            "memory.events"
        } else {
            "memory.oom_control"
        };
        std::fs::read_to_string(self.dir_of(file).join(file))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("oom_kill "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(0)
    }

    /// What the cgroup's processes use now, if process `pid` (the run's QEMU) is in it: a
    /// cgroup left by an earlier run, or one of a VM running outside a zone, is not this run's
    /// and gives nothing. Each value the kernel does not offer stays `None` (`memory.peak`
    /// came with Linux 5.19; v1's "no limit" is no limit).
    pub fn usage(&self, pid: u32) -> Option<ZoneUsage> {
        // cgroupfs holds no links and its files are the kernel's; O_NOFOLLOW still keeps a
        // name from being followed anywhere else.
        let read = |file: &str| -> Option<String> {
            use std::io::Read;
            use std::os::unix::fs::OpenOptionsExt;
            let mut s = String::new();
            std::fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
                .open(self.dir_of(file).join(file))
                .ok()?
                .take(64 << 10)
                .read_to_string(&mut s)
                .ok()?;
            Some(s)
        };
        let pid = pid.to_string();
        if !read("cgroup.procs")?.lines().any(|l| l.trim() == pid) {
            return None;
        }
        let num = |file: &str| read(file).and_then(|s| s.trim().parse::<u64>().ok());
        if self.is_v2() {
            Some(ZoneUsage {
                cpu_us: read("cpu.stat").and_then(|s| {
                    s.lines()
                        .find_map(|l| l.strip_prefix("usage_usec "))
                        .and_then(|v| v.trim().parse().ok())
                }),
                memory_bytes: num("memory.current"),
                memory_peak_bytes: num("memory.peak"),
                memory_limit_bytes: num("memory.max"),
            })
        } else {
            Some(ZoneUsage {
                cpu_us: num("cpuacct.usage").map(|ns| ns / 1000),
                memory_bytes: num("memory.usage_in_bytes"),
                memory_peak_bytes: num("memory.max_usage_in_bytes"),
                // v1 says "no limit" as the largest page-aligned count.
                memory_limit_bytes: num("memory.limit_in_bytes").filter(|&b| b < 1 << 62),
            })
        }
    }

    /// Remove it (its processes have ended; the kernel may take a moment to notice).
    pub fn remove(&self) -> Result<()> {
        for d in self.dirs() {
            let mut tries = 0;
            loop {
                match std::fs::remove_dir(&d) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 100 => {
                        tries += 1;
                        std::thread::sleep(std::time::Duration::from_millis(10));
                    }
                    Err(e) => return Err(e).ctx(|| format!("removing cgroup {}", d.display())),
                }
            }
        }
        Ok(())
    }
}
