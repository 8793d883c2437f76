//! Every VM's QEMU runs in its zone (issue 11): read back from the kernel, not from vmpool.
//!
//! Runs on this host (cgroup v1 controllers, as these build machines have) in `make test`, and
//! in the guest harness on cgroup v2 (`make test-zones-v2`, which sets
//! `VMPOOL_EXPECT_CGROUP=2`). Needs root. QEMU is started for real (TCG); the tests do not
//! wait for the guest to boot, so they also run inside the emulated harness.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use uuid::Uuid;
use vmpool::store::StartOptions;
use vmpool::vm::{Caps, State};
use vmpool::{Vm, VmSpec};

type Env = GuestStore;

fn env() -> Env {
    assert_eq!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() },
        0,
        "zones need root"
    );
    guest_store("&clone=qcow2&zone=on")
}

impl Env {
    fn start(&self, alias: &str, ram: u64, caps: Caps) -> Vm {
        let v = self
            .s
            .create_vm(
                &VmSpec::new(self.image.uuid)
                    .alias(alias)
                    .owner("z")
                    .vcpus(1)
                    .ram_mib(ram)
                    .caps(caps),
            )
            .unwrap();
        self.s.start_vm(v.uuid, &StartOptions::default()).unwrap()
    }

    fn pid(&self, vm: &Uuid) -> u32 {
        self.s.vm_status(*vm).unwrap().run.unwrap().qemu_pid
    }
}

fn status(pid: u32) -> std::collections::BTreeMap<String, String> {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.to_owned(), v.trim().to_owned()))
        .collect()
}

/// The VM's cgroup directory for `controller` (v2: the one directory), from /proc/PID/cgroup.
fn cgroup_dir(pid: u32, controller: &str) -> (u32, PathBuf) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let mount_of = |fstype: &str, opt: Option<&str>| {
        mounts.lines().find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            let mut r = right.split(' ');
            let (t, _, so) = (r.next()?, r.next()?, r.next().unwrap_or(""));
            (t == fstype && opt.is_none_or(|o| so.split(',').any(|x| x == o)))
                .then(|| PathBuf::from(left.split(' ').nth(4).unwrap()))
        })
    };
    for l in text.lines() {
        let mut f = l.splitn(3, ':');
        let (_, ctrls, path) = (f.next().unwrap(), f.next().unwrap(), f.next().unwrap());
        if ctrls.split(',').any(|c| c == controller) {
            let m = mount_of("cgroup", Some(controller)).unwrap();
            return (1, m.join(path.trim_start_matches('/')));
        }
    }
    let path = text.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
    (
        2,
        mount_of("cgroup2", None)
            .unwrap()
            .join(path.trim_start_matches('/')),
    )
}

fn read(dir: &Path, file: &str) -> String {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_else(|e| panic!("{}: {e}", dir.join(file).display()))
        .trim()
        .to_owned()
}

fn expected_version() -> Option<u32> {
    std::env::var("VMPOOL_EXPECT_CGROUP")
        .ok()
        .and_then(|v| v.parse().ok())
}

#[test]
#[ignore = "needs root: make test (v1 here) and make test-zones-v2 (v2 in the guest)"]
fn every_vm_runs_in_its_zone() {
    let e = env();
    let a = e.start("za", 256, Caps::default());
    let b = e.start("zb", 256, Caps::default());
    for (v, other) in [(&a, &b), (&b, &a)] {
        let pid = e.pid(&v.uuid);
        let st = status(pid);
        let uid: u32 = st["Uid"]
            .split_whitespace()
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert!(uid >= 1000, "QEMU runs as uid {uid}");
        assert!(
            st["Uid"].split_whitespace().all(|u| u == uid.to_string()),
            "{}",
            st["Uid"]
        );
        assert_eq!(st["CapEff"], "0000000000000000");
        assert_eq!(st["CapPrm"], "0000000000000000");
        assert_eq!(st["CapBnd"], "0000000000000000");
        assert_eq!(st["NoNewPrivs"], "1");
        assert_eq!(st["Seccomp"], "2");
        // PID 1 of a namespace of its own.
        assert_eq!(
            st["NSpid"].split_whitespace().last(),
            Some("1"),
            "{}",
            st["NSpid"]
        );
        // What it sees: its disk and image; not the other VM's, not the store's catalog,
        // not the host.
        let root = PathBuf::from(format!("/proc/{pid}/root"));
        let inside = |p: &str| root.join(p.trim_start_matches('/'));
        assert!(inside(&v.disk_path).exists(), "its own disk");
        assert!(inside(&e.image.disk).exists(), "its image");
        assert!(
            !inside(&other.disk_path).exists(),
            "the other VM's disk is visible"
        );
        assert!(!inside(
            &e.s.catalog_dir()
                .join("vms")
                .join(format!("{}.json", v.uuid))
                .display()
                .to_string()
        )
        .exists());
        assert!(!inside("/root").exists() && !inside("/home").exists() && !inside("/var").exists());
        assert!(inside("/usr/bin").exists() && inside("/dev/null").exists());
        assert!(
            !inside("/dev/sda").exists()
                && !inside("/dev/vda").exists()
                && !inside("/dev/mem").exists()
        );
        // Its cgroup: the limits of its size.
        let (ver, mem) = cgroup_dir(pid, "memory");
        if let Some(want) = expected_version() {
            assert_eq!(ver, want, "cgroup version");
        }
        let want_mem =
            (256 + vmpool::zone::QEMU_OVERHEAD_MIB + u64::from(vmpool::zone::TCG_CACHE_MIB)) << 20;
        let (_, pids) = cgroup_dir(pid, "pids");
        let (_, cpu) = cgroup_dir(pid, "cpu");
        if ver == 2 {
            assert_eq!(read(&mem, "memory.max"), want_mem.to_string());
            assert_eq!(read(&mem, "memory.swap.max"), "0");
            assert_eq!(read(&cpu, "cpu.max"), "100000 100000");
        } else {
            assert_eq!(read(&mem, "memory.limit_in_bytes"), want_mem.to_string());
            assert_eq!(read(&cpu, "cpu.cfs_quota_us"), "100000");
        }
        assert_eq!(
            read(&pids, "pids.max"),
            vmpool::zone::pids_max(1).to_string()
        );
        assert!(
            mem.to_string_lossy()
                .contains(&format!("vmpool/vm-{}", v.uuid)),
            "{}",
            mem.display()
        );
        eprintln!("VM {} in cgroup v{ver}: {}", v.alias, mem.display());
    }
    // Stopped: its cgroup is gone.
    let pid = e.pid(&a.uuid);
    let (_, mem) = cgroup_dir(pid, "memory");
    e.s.kill_vm(a.uuid).unwrap();
    assert!(!mem.exists(), "{} is left", mem.display());
    e.s.kill_vm(b.uuid).unwrap();
}

#[test]
#[ignore = "needs root: make test (v1 here) and make test-zones-v2 (v2 in the guest)"]
fn a_guest_over_its_memory_cap_is_killed_and_the_others_run_on() {
    let e = env();
    let other = e.start("bystander", 256, Caps::default());
    // 512 MiB of RAM, all touched at start, in a zone capped at 256 MiB.
    let v =
        e.s.create_vm(
            &VmSpec::new(e.image.uuid)
                .alias("hog")
                .owner("z")
                .vcpus(1)
                .ram_mib(512)
                .caps(Caps {
                    memory_mib: Some(256),
                    prealloc: true,
                    ..Default::default()
                }),
        )
        .unwrap();
    let r = e.s.start_vm(v.uuid, &StartOptions::default());
    // Killed while starting (start fails) or right after: either way the VM says why.
    let deadline = Instant::now() + Duration::from_secs(120);
    let st = loop {
        let st = e.s.vm(v.uuid).unwrap();
        if st.state == State::Failed {
            break st;
        }
        assert!(Instant::now() < deadline, "still {:?} ({r:?})", st.state);
        std::thread::sleep(Duration::from_millis(100));
    };
    let why = st.last_exit.unwrap();
    assert!(
        why.reason.contains("out of memory"),
        "{why:?} (start: {r:?})"
    );
    // The other VM runs on.
    assert_eq!(e.s.vm(other.uuid).unwrap().state, State::Running);
    assert!(vmpool::vm::runtime::start_ticks(e.pid(&other.uuid)).is_some());
    e.s.kill_vm(other.uuid).unwrap();
}

#[test]
#[ignore = "needs root: make test (v1 here) and make test-zones-v2 (v2 in the guest)"]
fn pids_max_holds() {
    let e = env();
    let v = e.start("tasks", 256, Caps::default());
    let pid = e.pid(&v.uuid);
    let (_, pids) = cgroup_dir(pid, "pids");
    let max: u64 = read(&pids, "pids.max").parse().unwrap();
    let current: u64 = read(&pids, "pids.current").parse().unwrap();
    assert!(current >= 1 && current <= max, "{current} of {max}");
    // A process put into the VM's cgroup cannot make more tasks than the limit lets it.
    let script = r#"
import os, sys, time
d = sys.argv[1]
open(d + "/cgroup.procs", "w").write(str(os.getpid()))
made = refused = 0
for _ in range(int(sys.argv[2])):
    try:
        if os.fork() == 0:
            os.close(1); os.close(2); time.sleep(5)
            os._exit(0)
        made += 1
    except OSError:
        refused += 1
print(made, refused, open(d + "/pids.current").read().strip())
"#;
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            script,
            &pids.display().to_string(),
            &(max + 20).to_string(),
        ])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let n: Vec<u64> = text
        .split_whitespace()
        .filter_map(|x| x.parse().ok())
        .collect();
    assert_eq!(
        n.len(),
        3,
        "{text} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let (made, refused, after) = (n[0], n[1], n[2]);
    assert!(after <= max, "{after} tasks in a cgroup limited to {max}");
    assert!(refused >= 20, "only {refused} forks refused ({made} made)");
    // Clean up the sleepers (they are in the VM's cgroup).
    for p in read(&pids, "cgroup.procs").lines() {
        let p: i32 = p.parse().unwrap();
        if p as u32 != pid {
            let _ =
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(p), nix::sys::signal::SIGKILL);
        }
    }
    e.s.kill_vm(v.uuid).unwrap();
}
