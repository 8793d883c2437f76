//! What a VM uses (issue 22's metrics): `vm_stats` read against what its guest was made to
//! do. Two guests boot side by side; one is told to write and read its disk and spin its CPU
//! (the test guest's `busy` command), the other idles; only the busy one's counters move.

use crate::common::*;
use std::time::Duration;
use uuid::Uuid;
use vmpool::store::StartOptions;
use vmpool::vm::stats::VmStats;
use vmpool::vm::State;
use vmpool::VmSpec;

const BOOT: Duration = Duration::from_secs(240);
const READY: &str = "VMPOOL-TEST-GUEST: ready";

fn disk0(s: &VmStats) -> (u64, u64) {
    let d = s
        .disks
        .iter()
        .find(|d| d.id == "disk0")
        .unwrap_or_else(|| panic!("no disk0 in {:?}", s.disks));
    (d.rd_bytes, d.wr_bytes)
}

fn cpu(s: &VmStats) -> u64 {
    s.cpu_time_us.expect("a running VM has a CPU time")
}

#[test]
#[ignore = "boots two guests in their zones (TCG, root): make test"]
fn a_busy_guest_moves_its_cpu_and_disk_counters_and_an_idle_one_does_not() {
    // SAFETY: geteuid has no preconditions.
    assert_eq!(unsafe { libc::geteuid() }, 0, "zones need root");
    let g = guest_store("&clone=qcow2&zone=on");
    let make = |alias: &str| -> Uuid {
        let v =
            g.s.create_vm(
                &VmSpec::new(g.image.uuid)
                    .alias(alias)
                    .owner("meter")
                    .vcpus(1)
                    .ram_mib(256),
            )
            .unwrap();
        v.uuid
    };
    let (busy, idle, off) = (make("busy"), make("idle"), make("off"));

    // A VM that does not run: its state, and nothing measured.
    let st = g.s.vm_stats(off).unwrap();
    assert_eq!((st.state, st.alias.as_str()), (State::Stopped, "off"));
    assert!(st.cpu_time_us.is_none() && st.memory.is_none() && st.uptime_s.is_none());
    assert!(st.disks.is_empty());
    assert!(matches!(
        g.s.vm_stats(Uuid::new_v4()),
        Err(vmpool::Error::NotFound { .. })
    ));

    for v in [busy, idle] {
        g.s.start_vm(v, &StartOptions::default()).unwrap();
    }
    for v in [busy, idle] {
        wait_serial_log(&g.s, v, READY, 1, BOOT);
    }
    let before = [g.s.vm_stats(busy).unwrap(), g.s.vm_stats(idle).unwrap()];
    for b in &before {
        assert_eq!(b.state, State::Running);
        assert!(b.uptime_s.is_some());
        let m = b.memory.expect("a running VM has its memory measured");
        assert!(m.rss_bytes > 16 << 20, "{m:?}");
        assert!(m.pss_bytes > 0 && m.pss_bytes <= m.rss_bytes, "{m:?}");
        assert!(m.private_bytes <= m.rss_bytes, "{m:?}");
        // The zone's count: QEMU is charged to its cgroup, under the limit vmpool set.
        let (now, limit) = (m.zone_bytes.unwrap(), m.zone_limit_bytes.unwrap());
        assert!(now > 0 && now <= limit, "{m:?}");
        assert_eq!(limit, (256 + 192 + 128) << 20, "{m:?}");
        // memory.peak came with Linux 5.19 (v1 always has its max_usage_in_bytes).
        assert!(m.zone_peak_bytes.is_none_or(|p| p >= now), "{m:?}");
        assert!(b.cpu_source.is_some(), "{b:?}");
        assert!(b.disks.iter().any(|d| d.id == "disk0"), "{:?}", b.disks);
    }

    type_line(&g.s, busy, "busy 6");
    // While it spins, `vmpoolctl top` shows it first: the busiest desktop of the host.
    let top = ctl(
        &g.uri,
        &["--json", "top", "--interval", "2", "--count", "1"],
        &[],
        None,
    );
    assert!(top.status.success(), "{top:?}");
    let screen: serde_json::Value = serde_json::from_slice(&top.stdout).unwrap();
    let vms = screen["vms"].as_array().unwrap();
    let shown: Vec<&str> = vms.iter().map(|v| v["alias"].as_str().unwrap()).collect();
    assert_eq!(shown, ["busy", "idle"], "{screen}");
    let pct = |i: usize| vms[i]["cpu_pct"].as_f64().unwrap();
    assert!(pct(0) > 25.0 && pct(0) > 4.0 * pct(1), "{screen}");
    assert!(vms[0]["pss_bytes"].as_u64().unwrap() > 16 << 20, "{screen}");
    let bad = ctl(&g.uri, &["top", "--interval", "0"], &[], None);
    assert_eq!(
        bad.status.code(),
        Some(vmpool::ffi::result::vmpool_result::VMPOOL_RESULT_INVALID_ARGUMENT as i32),
        "{bad:?}"
    );
    wait_serial_log(
        &g.s,
        busy,
        "VMPOOL-TEST-GUEST: busy done",
        1,
        Duration::from_secs(120),
    );
    let after = [g.s.vm_stats(busy).unwrap(), g.s.vm_stats(idle).unwrap()];

    // One source of CPU time per VM throughout (its zone's, or its process's).
    for (a, b) in after.iter().zip(&before) {
        assert_eq!(a.cpu_source, b.cpu_source, "{a:?} {b:?}");
    }
    let delta = |i: usize| {
        cpu(&after[i])
            .checked_sub(cpu(&before[i]))
            .unwrap_or_else(|| panic!("CPU time went back: {:?} {:?}", before[i], after[i]))
    };
    let (cpu_busy, cpu_idle) = (delta(0), delta(1));
    let (rd_busy, wr_busy) = (
        disk0(&after[0]).0 - disk0(&before[0]).0,
        disk0(&after[0]).1 - disk0(&before[0]).1,
    );
    let (rd_idle, wr_idle) = (
        disk0(&after[1]).0 - disk0(&before[1]).0,
        disk0(&after[1]).1 - disk0(&before[1]).1,
    );
    eprintln!(
        "busy: cpu {cpu_busy} us, read {rd_busy} B, written {wr_busy} B; idle: cpu {cpu_idle} us, read {rd_idle} B, written {wr_idle} B"
    );
    // The guest spun its one vCPU for 6 s of its own clock (less of the host's CPU when the
    // host is loaded, but far more than an idle guest's timer ticks).
    assert!(cpu_busy >= 1_000_000, "busy guest used {cpu_busy} us");
    assert!(
        cpu_busy > 4 * cpu_idle,
        "busy {cpu_busy} us against idle {cpu_idle} us"
    );
    // 4 MiB written through to the disk and read back past the guest's page cache.
    assert!(wr_busy >= 4 << 20, "busy guest wrote {wr_busy} bytes");
    assert!(rd_busy >= 4 << 20, "busy guest read {rd_busy} bytes");
    // The idle guest's ext4 may still commit metadata of its boot (atime of the programs it
    // ran first): a few blocks, never megabytes.
    assert!(
        rd_idle < 256 << 10 && wr_idle < 256 << 10,
        "the idle guest read {rd_idle} and wrote {wr_idle} bytes"
    );

    // Killed: nothing of its run is measured any more.
    g.s.kill_vm(busy).unwrap();
    let st = g.s.vm_stats(busy).unwrap();
    assert!(!st.state.is_active(), "{:?}", st.state);
    assert!(st.cpu_time_us.is_none() && st.memory.is_none() && st.disks.is_empty());
    g.s.kill_vm(idle).unwrap();
}
