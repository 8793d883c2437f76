//! What a VM uses now (issue 22's metrics): CPU time, memory, disk I/O. Counters only (CPU
//! time, bytes, requests), never rates: a caller (`vmpoolctl top`, a Prometheus scraper, the
//! portal) takes two samples and divides, so every reader gets the window it wants and no
//! call waits to measure one. They restart when QEMU does (a start, a wake), as `uptime_s`
//! does: a counter that went back is a reset, as Prometheus' counters expect.
//!
//! Three sources, each for what only it knows: QEMU's process (`/proc/PID`: CPU time, RSS,
//! PSS), the zone's resource controls (the cgroup: CPU time and memory as charged, its peak
//! and limit) and QEMU itself (QMP `query-blockstats`). QEMU may be compromised, so what it
//! reports is shown and never acted on, and its process is read through one descriptor of
//! `/proc/PID` checked to be the run's QEMU (its start time): a pid the kernel gave to
//! another process since reads as gone, never as that process.

use crate::error::{Error, Result};
use crate::store::Store;
use crate::vm::qmp::BlockStats;
use crate::vm::runtime::RunInfo;
use crate::vm::State;
use crate::zone::{Zone, ZoneUsage};
use serde::{Deserialize, Serialize};
use std::fs::File;
use std::io::Read;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use uuid::Uuid;

/// How long a sample waits for QEMU's monitor, for the connection and for the reply each.
pub const QMP_STATS_TIMEOUT: std::time::Duration = std::time::Duration::from_millis(500);

/// A VM's resource use at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct VmStats {
    /// The VM.
    pub uuid: Uuid,
    /// Its name.
    pub alias: String,
    /// Whom it belongs to (empty for a pool's spare).
    pub owner: String,
    /// Its pool, if any.
    pub pool: Option<String>,
    /// Its live state.
    pub state: State,
    /// Its virtual CPUs (CPU time over wall time over this is how busy they are).
    pub vcpus: u32,
    /// Its RAM, MiB.
    pub ram_mib: u64,
    /// When the sample was taken, RFC 3339 UTC with microseconds.
    pub sampled_at: String,
    /// Seconds since QEMU started, while it runs.
    pub uptime_s: Option<u64>,
    /// CPU time QEMU used (user and system, all its threads), microseconds, while it runs:
    /// the zone's count when it has one, else the process's ([`VmStats::cpu_source`]).
    pub cpu_time_us: Option<u64>,
    /// Where `cpu_time_us` comes from: `zone` (its cgroup) or `process` (`/proc`). Two
    /// samples are compared only if they agree.
    pub cpu_source: Option<CpuSource>,
    /// Memory, while it runs.
    pub memory: Option<MemoryStats>,
    /// Each drive's I/O counters, as QEMU reports them, while it runs (empty otherwise, or
    /// if QEMU did not answer).
    pub disks: Vec<BlockStats>,
}

/// Which count of CPU time a sample holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "lowercase")]
pub enum CpuSource {
    /// The zone's cgroup (`cpu.stat`'s `usage_usec`, or v1's `cpuacct.usage`).
    Zone,
    /// QEMU's process (`/proc/PID/stat`, in clock ticks).
    Process,
}

/// A running VM's memory.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct MemoryStats {
    /// QEMU's resident memory, bytes (`Rss` of `/proc/PID/smaps_rollup`).
    pub rss_bytes: u64,
    /// Its proportional share, bytes (`Pss`): pages shared with other QEMUs (a memory
    /// template's) count once in the sum over VMs.
    pub pss_bytes: u64,
    /// Memory only it holds, bytes (`Private_Clean` + `Private_Dirty`).
    pub private_bytes: u64,
    /// What the zone is charged now, bytes (its cgroup's; page cache of its files included).
    pub zone_bytes: Option<u64>,
    /// The most the zone was ever charged, bytes.
    pub zone_peak_bytes: Option<u64>,
    /// The zone's memory limit, bytes.
    pub zone_limit_bytes: Option<u64>,
}

/// What `/proc/PID` says of a process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProcUsage {
    pub cpu_time_us: u64,
    pub rss_bytes: u64,
    pub pss_bytes: u64,
    pub private_bytes: u64,
}

fn io(context: String, e: impl Into<std::io::Error>) -> Error {
    Error::Io {
        context,
        source: e.into(),
    }
}

/// Read at most 64 KiB of `name` under the open `/proc/PID` directory `dir`.
fn read_at(dir: &OwnedFd, name: &str) -> std::io::Result<Vec<u8>> {
    use nix::fcntl::OFlag;
    let fd = nix::fcntl::openat(
        Some(dir.as_raw_fd()),
        name,
        OFlag::O_RDONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW,
        nix::sys::stat::Mode::empty(),
    )?;
    // SAFETY: openat returned a new descriptor that nothing else owns.
    let f = File::from(unsafe { OwnedFd::from_raw_fd(fd) });
    let mut s = Vec::new();
    f.take(64 << 10).read_to_end(&mut s)?;
    Ok(s)
}

/// The CPU time (fields 14 and 15, in clock ticks) and start time (field 22) of a
/// `/proc/PID/stat` line ([`runtime::stat_fields`](crate::vm::runtime::stat_fields): the
/// command name is QEMU's to choose).
pub(crate) fn parse_stat(stat: &[u8]) -> Option<(u64, u64)> {
    let f = crate::vm::runtime::stat_fields(stat)?;
    // `f` starts at field 3: field N is f[N - 3].
    let n = |i: usize| f.get(i - 3).and_then(|v| v.parse::<u64>().ok());
    Some((n(14)?.checked_add(n(15)?)?, n(22)?))
}

/// `Rss`, `Pss` and private bytes of a `smaps_rollup`.
pub(crate) fn parse_rollup(rollup: &str) -> (u64, u64, u64) {
    let kib = |key: &str| {
        rollup
            .lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
            .and_then(|v| v.trim().strip_suffix("kB"))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .unwrap_or(0)
            .saturating_mul(1024)
    };
    (
        kib("Rss"),
        kib("Pss"),
        kib("Private_Clean").saturating_add(kib("Private_Dirty")),
    )
}

/// What process `pid`, started at `start_ticks`, uses; `Ok(None)` if that process is gone
/// (its pid may name another process now: it is not read).
pub(crate) fn proc_usage(pid: u32, start_ticks: u64) -> Result<Option<ProcUsage>> {
    let path = format!("/proc/{pid}");
    let dir = match std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_DIRECTORY | libc::O_NOFOLLOW | libc::O_CLOEXEC)
        .open(&path)
    {
        Ok(f) => OwnedFd::from(f),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(format!("opening {path}"), e)),
    };
    // Through `dir`, a process that ended reads as ESRCH even if its pid was reused.
    let gone = |e: &std::io::Error| {
        e.raw_os_error() == Some(libc::ESRCH) || e.kind() == std::io::ErrorKind::NotFound
    };
    let stat = match read_at(&dir, "stat") {
        Ok(s) => s,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(io(format!("reading {path}/stat"), e)),
    };
    let Some((ticks, started)) = parse_stat(&stat) else {
        return Err(Error::Internal(format!(
            "{path}/stat has no CPU or start time"
        )));
    };
    if started != start_ticks {
        return Ok(None);
    }
    let rollup = match read_at(&dir, "smaps_rollup") {
        Ok(s) => s,
        Err(e) if gone(&e) => return Ok(None),
        Err(e) => return Err(io(format!("reading {path}/smaps_rollup"), e)),
    };
    let (rss_bytes, pss_bytes, private_bytes) = parse_rollup(&String::from_utf8_lossy(&rollup));
    Ok(Some(ProcUsage {
        cpu_time_us: ticks.saturating_mul(1_000_000) / clock_ticks_per_s(),
        rss_bytes,
        pss_bytes,
        private_bytes,
    }))
}

fn clock_ticks_per_s() -> u64 {
    // SAFETY: sysconf reads a constant of the system.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

/// CPU time (and its source) and memory from the process's and the zone's figures.
fn sample(
    proc: Option<ProcUsage>,
    zone: Option<ZoneUsage>,
) -> (Option<(u64, CpuSource)>, Option<MemoryStats>) {
    let cpu = zone
        .and_then(|z| z.cpu_us)
        .map(|c| (c, CpuSource::Zone))
        .or(proc.map(|p| (p.cpu_time_us, CpuSource::Process)));
    let memory = proc.map(|p| MemoryStats {
        rss_bytes: p.rss_bytes,
        pss_bytes: p.pss_bytes,
        private_bytes: p.private_bytes,
        zone_bytes: zone.and_then(|z| z.memory_bytes),
        zone_peak_bytes: zone.and_then(|z| z.memory_peak_bytes),
        zone_limit_bytes: zone.and_then(|z| z.memory_limit_bytes),
    });
    (cpu, memory)
}

impl Store {
    /// What VM `uuid` uses now: CPU time, memory and each drive's I/O while it runs; its
    /// state alone otherwise. Changes nothing and waits for nothing (its live state is read
    /// as `vm get` reads it, QEMU's monitor is given [`QMP_STATS_TIMEOUT`]), so a scraper may
    /// call it often, also while another call starts or stops the VM (whose run it then
    /// reports as not running).
    pub fn vm_stats(&self, uuid: Uuid) -> Result<VmStats> {
        let r = self.record(&uuid)?;
        let run = self.run_dir(&uuid);
        let vm = self.live(&r);
        let sampled_at = humantime::format_rfc3339_micros(std::time::SystemTime::now());
        let info: Option<RunInfo> = if vm.state.is_active() {
            self.run_info(&r, &run)
        } else {
            None
        };
        let mut out = VmStats {
            uuid,
            alias: vm.alias.clone(),
            owner: vm.owner.clone(),
            pool: vm.pool.clone(),
            state: vm.state,
            vcpus: vm.vcpus,
            ram_mib: vm.ram_mib,
            sampled_at: sampled_at.to_string(),
            uptime_s: None,
            cpu_time_us: None,
            cpu_source: None,
            memory: None,
            disks: Vec::new(),
        };
        let Some(info) = info else {
            return Ok(out);
        };
        let Some(proc) = proc_usage(info.qemu_pid, info.qemu_start)? else {
            return Ok(out);
        };
        let zone = crate::zone::HostZone::default().usage(&uuid, info.qemu_pid);
        let (cpu, memory) = sample(Some(proc), zone);
        (out.cpu_time_us, out.cpu_source, out.memory) =
            (cpu.map(|c| c.0), cpu.map(|c| c.1), memory);
        out.uptime_s = info.uptime_s();
        // QEMU's monitor takes one client at a time, and a suspend holds it while the state
        // is saved: a sample waits at most QMP_STATS_TIMEOUT for it and then shows no drives,
        // rather than keeping a scraper (or a Puma worker) waiting on a hung or busy QEMU.
        out.disks = self
            .qmp_within(&uuid, &run, QMP_STATS_TIMEOUT)
            .ok()
            .and_then(|mut q| q.query_blockstats(QMP_STATS_TIMEOUT).ok())
            .unwrap_or_default();
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_counted_from_the_last_parenthesis() {
        // A command name QEMU chose to look like more fields.
        let line = "42 (qemu) 1 2 3 (x) S 1 42 42 0 -1 4194560 100 0 0 0 250 50 0 0 20 0 9 0 777 1000 10 18446744073709551615";
        assert_eq!(parse_stat(line.as_bytes()), Some((300, 777)));
        assert_eq!(parse_stat(b"42 (qemu) S 1"), None);
        assert_eq!(parse_stat(b"no parenthesis"), None);
        // A name that is no UTF-8 still leaves the kernel's fields readable.
        let mut raw = b"42 (\xff\xfe)".to_vec();
        raw.extend_from_slice(&line.as_bytes()[line.rfind(')').unwrap() + 1..]);
        assert_eq!(parse_stat(&raw), Some((300, 777)));
    }

    #[test]
    fn rollup() {
        let r = "55d0-7ff [rollup]\nRss:  2048 kB\nPss:   1024 kB\nPss_Anon: 9 kB\nPrivate_Clean: 100 kB\nPrivate_Dirty: 28 kB\n";
        assert_eq!(parse_rollup(r), (2 << 20, 1 << 20, 128 << 10));
        assert_eq!(parse_rollup("garbage"), (0, 0, 0));
    }

    #[test]
    fn own_process_is_read_and_another_start_is_not() {
        let me = std::process::id();
        let t = crate::vm::runtime::start_ticks(me).unwrap();
        let u = proc_usage(me, t).unwrap().unwrap();
        assert!(u.rss_bytes > 0 && u.pss_bytes > 0 && u.private_bytes > 0);
        assert!(u.pss_bytes <= u.rss_bytes);
        assert!(
            proc_usage(me, t + 1).unwrap().is_none(),
            "another start is another process"
        );
        assert!(proc_usage(u32::MAX, t).unwrap().is_none());
    }

    #[test]
    fn the_zones_cpu_count_wins_and_memory_needs_the_process() {
        let p = ProcUsage {
            cpu_time_us: 5,
            rss_bytes: 3,
            pss_bytes: 2,
            private_bytes: 1,
        };
        let z = ZoneUsage {
            cpu_us: Some(7),
            memory_bytes: Some(9),
            memory_peak_bytes: Some(10),
            memory_limit_bytes: None,
        };
        let (cpu, mem) = sample(Some(p), Some(z));
        assert_eq!(cpu, Some((7, CpuSource::Zone)));
        let mem = mem.unwrap();
        assert_eq!(
            (mem.rss_bytes, mem.zone_bytes, mem.zone_limit_bytes),
            (3, Some(9), None)
        );
        assert_eq!(sample(Some(p), None).0, Some((5, CpuSource::Process)));
        assert_eq!(sample(None, Some(z)).1, None);
    }
}
