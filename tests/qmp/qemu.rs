//! A real, paused QEMU per test (no guest: `-S`, no disks, no kernel).

#![allow(dead_code)]

use std::fs::File;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use vmpool::vm::qmp::Qmp;

/// Generous: under TCG on a loaded 2-core machine QEMU takes 50-100 ms to come up, far more
/// when another build is running.
pub const START: Duration = Duration::from_secs(20);
pub const CALL: Duration = Duration::from_secs(10);

static COUNTER: AtomicUsize = AtomicUsize::new(0);

pub struct Qemu {
    pub child: Child,
    pub dir: PathBuf,
    pub sock: PathBuf,
}

impl Qemu {
    /// Start QEMU; returns at once (the socket appears a little later, which is what
    /// `Qmp::connect`'s retry is for).
    pub fn start(extra: &[&str]) -> Qemu {
        let dir = std::env::temp_dir().join(format!(
            "qmp-test-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let sock = dir.join("qmp.sock");
        let log = File::create(dir.join("qemu.log")).unwrap();
        let mut cmd = Command::new("qemu-system-x86_64");
        cmd.args([
            "-accel",
            "tcg",
            "-machine",
            "q35",
            "-m",
            "64",
            "-nodefaults",
        ])
        .args(["-display", "none", "-S", "-qmp"])
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(log);
        let child = cmd.spawn().expect("spawn qemu-system-x86_64");
        Qemu { child, dir, sock }
    }

    pub fn connect(&self) -> Qmp {
        match Qmp::connect(&self.sock, START) {
            Ok(q) => q,
            Err(e) => panic!("connect: {e}; qemu log: {}", self.log()),
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("qemu.log")).unwrap_or_default()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid().to_string()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {}", self.pid());
    }

    /// Wait (bounded) for QEMU to exit by itself.
    pub fn wait_exit(&mut self, within: Duration) -> bool {
        let until = std::time::Instant::now() + within;
        while std::time::Instant::now() < until {
            if let Ok(Some(_)) = self.child.try_wait() {
                return true;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        false
    }
}

impl Drop for Qemu {
    fn drop(&mut self) {
        // SIGCONT first in case a test stopped it and failed before resuming; SIGKILL works
        // on a stopped process anyway, this just keeps `kill` semantics simple.
        let _ = Command::new("kill")
            .args(["-CONT", &self.pid().to_string()])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn median(v: &mut [Duration]) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn percentile(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    let i = ((v.len() as f64 - 1.0) * p).round() as usize;
    v[i]
}
