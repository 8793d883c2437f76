//! The library's static probes (issue 22), as bpftrace sees them: bpftrace attaches to this
//! very test process (the library is linked into it) while it imports an image, creates and
//! starts a VM, acquires one from a pool and kills both, and every probe docs/probes.md lists
//! fires with the arguments it documents.

use crate::common::*;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use uuid::Uuid;
use vmpool::pool::{AcquireOptions, PoolSpec, Warmth};
use vmpool::store::StartOptions;
use vmpool::VmSpec;

/// One line per firing: the probe's letter, then its arguments.
fn script(bin: &str) -> String {
    format!(
        r#"usdt:{bin}:vmpool:op__start {{ printf("S %d %s %s %d\n", arg0, str(arg1), str(arg2), arg3); }}
usdt:{bin}:vmpool:op__done {{ printf("D %d %s %s %d %d\n", arg0, str(arg1), str(arg2), arg3, arg4); }}
usdt:{bin}:vmpool:step__done {{ printf("T %d %s %d\n", arg0, str(arg1), arg2); }}
usdt:{bin}:vmpool:qmp__done {{ printf("Q %d %s %d %d\n", arg0, str(arg1), arg2, arg3); }}
"#
    )
}

struct Trace {
    child: std::process::Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// What bpftrace said on stderr (shown when it did not begin).
    errors: Arc<Mutex<Vec<String>>>,
    /// The threads reading its stdout and stderr (they end at its exit).
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Trace {
    /// bpftrace with `args` (a program, `-e` text or a script file, on this process's
    /// executable: this test is the one process running it).
    fn attach(args: &[&str]) -> Trace {
        // bpftrace detaches uprobes through tracefs (it cannot without it). Left mounted, as
        // systemd mounts it at boot on any ordinary host.
        if !std::path::Path::new("/sys/kernel/tracing/uprobe_events").exists() {
            let ok = Command::new("mount")
                .args(["-t", "tracefs", "nodev", "/sys/kernel/tracing"])
                .status()
                .unwrap()
                .success();
            assert!(ok, "cannot mount tracefs for bpftrace");
        }
        let mut child = Command::new("bpftrace")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("bpftrace (make deps installs it)");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let keep = |from: Box<dyn std::io::Read + Send>, into: &Arc<Mutex<Vec<String>>>| {
            let into = into.clone();
            std::thread::spawn(move || {
                for l in BufReader::new(from).lines().map_while(Result::ok) {
                    into.lock().unwrap().push(l);
                }
            })
        };
        let readers = vec![
            keep(Box::new(child.stdout.take().unwrap()), &lines),
            keep(Box::new(child.stderr.take().unwrap()), &errors),
        ];
        Trace {
            child,
            lines,
            errors,
            readers,
        }
    }

    fn lines(&self) -> Vec<String> {
        self.lines.lock().unwrap().clone()
    }

    /// Wait for a shipped script's BEGIN line (bpftrace runs BEGIN once every probe is
    /// attached).
    fn ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.lines().iter().any(|l| l.starts_with("Tracing ")) {
            assert!(
                Instant::now() < deadline,
                "bpftrace did not begin: {:?} {:?}",
                self.lines(),
                self.errors.lock().unwrap()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fire a failing operation on a new uuid until bpftrace shows its end: everything fired
    /// before it has reached bpftrace's output too. Returns the uuid.
    fn sync(&self, s: &vmpool::Store) -> Uuid {
        let mark = Uuid::new_v4();
        let deadline = Instant::now() + Duration::from_secs(60);
        while !self.lines().iter().any(|l| l.contains(&mark.to_string())) {
            assert!(Instant::now() < deadline, "bpftrace never saw a probe fire");
            let _ = s.kill_vm(mark);
            std::thread::sleep(Duration::from_millis(100));
        }
        mark
    }

    /// End bpftrace (SIGINT, as Ctrl-C) and give every line it printed.
    fn end(mut self) -> Vec<String> {
        // SAFETY: kill with a pid of our child and a constant signal.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGINT) };
        self.child.wait().unwrap();
        for r in std::mem::take(&mut self.readers) {
            r.join().unwrap();
        }
        self.lines()
    }
}

impl Drop for Trace {
    /// A failed test leaves no bpftrace behind (its uprobes would stay on the binary).
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The fields of each `letter` line.
fn fired<'a>(lines: &'a [String], letter: &str) -> Vec<Vec<&'a str>> {
    lines
        .iter()
        .filter_map(|l| l.strip_prefix(letter)?.strip_prefix(' '))
        .map(|l| l.split(' ').collect())
        .collect()
}

#[test]
#[ignore = "attaches bpftrace (root) and starts QEMU (TCG): make test"]
fn every_documented_probe_fires_with_its_arguments() {
    let g = guest_store("&clone=qcow2");
    // A file of its own to import: other tests of this process import the test image too.
    let file = g.tmp.path().join("probed.raw");
    std::fs::copy(test_image(), &file).unwrap();
    let bin = std::env::current_exe().unwrap().display().to_string();
    let me = std::process::id().to_string();
    let trace = Trace::attach(&["-p", &me, "-e", &script(&bin)]);
    // The scripts examples/trace/ ships, on this process.
    let shipped = |name: &str| {
        let file = format!("{}/examples/trace/{name}", env!("CARGO_MANIFEST_DIR"));
        Trace::attach(&[file.as_str(), bin.as_str()])
    };
    let (steps_bt, qmp_bt, refill_bt) = (
        shipped("acquire-steps.bt"),
        shipped("slow-qmp.bt"),
        shipped("refill.bt"),
    );
    // Attached once a failing operation's end is seen (and with it the error's code).
    let missing = trace.sync(&g.s);
    for t in [&steps_bt, &qmp_bt, &refill_bt] {
        t.ready();
    }

    let img =
        g.s.import_image(
            &file,
            &vmpool::ImportRequest::default().name("probed"),
            None,
        )
        .unwrap();
    let vm =
        g.s.create_vm(
            &VmSpec::new(img.uuid)
                .alias("probed-vm")
                .owner("p")
                .vcpus(1)
                .ram_mib(256),
        )
        .unwrap();
    g.s.start_vm(vm.uuid, &StartOptions::default()).unwrap();
    let mut p = PoolSpec::new("probed", img.uuid);
    p.warmth = Warmth::Disk;
    p.spares = 1;
    p.ram_mib = 256;
    g.s.create_pool(&p).unwrap();
    let refilled =
        g.s.refill("probed", &Default::default(), &|_| {}, &Default::default());
    assert!(refilled.is_ok(), "{refilled:?}");
    let got =
        g.s.acquire(
            "probed",
            "ann",
            &AcquireOptions {
                console_ttl: Some(Duration::from_secs(60)),
                ..Default::default()
            },
        )
        .unwrap();
    g.s.kill_vm(vm.uuid).unwrap();
    g.s.kill_vm(got.vm.uuid).unwrap();
    trace.sync(&g.s);
    let lines = trace.end();
    let shipped_out: Vec<String> = [steps_bt, qmp_bt, refill_bt]
        .into_iter()
        .map(|t| t.end().join("\n"))
        .collect();
    let starts = fired(&lines, "S");
    let dones = fired(&lines, "D");

    // Each operation: one start and one end with the same id, its name and subject, code 0,
    // a duration. (Other tests of this process fire too: they are told apart by subject.)
    let mut ids = BTreeMap::new();
    for (op, subject) in [
        // A subject longer than 63 bytes is cut there (a deep scratch directory's path).
        (
            "image-import",
            file.display().to_string().chars().take(63).collect(),
        ),
        ("vm-create", "probed-vm".to_owned()),
        ("vm-start", vm.uuid.to_string()),
        ("pool-acquire", "probed/ann".to_owned()),
        ("vm-kill", vm.uuid.to_string()),
        ("vm-kill", got.vm.uuid.to_string()),
    ] {
        let s: Vec<_> = starts
            .iter()
            .filter(|f| f.len() == 4 && f[1] == op && f[2] == subject)
            .collect();
        assert_eq!(s.len(), 1, "{op} {subject}: {lines:#?}");
        assert_eq!(s[0][3], "0", "{op} runs within no other operation");
        let id = s[0][0];
        let d: Vec<_> = dones.iter().filter(|f| f[0] == id).collect();
        assert_eq!(d.len(), 1, "{op} {subject}: {lines:#?}");
        assert_eq!(&d[0][1..4], &[op, subject.as_str(), "0"], "{lines:#?}");
        let ns: u64 = d[0][4].parse().unwrap();
        assert!(ns > 0 && ns < 600_000_000_000, "{op}: {ns} ns");
        ids.insert(op, id.to_owned());
    }
    // A failing operation ends with the code the C ABI gives its error.
    let failed = dones
        .iter()
        .find(|f| f[1] == "vm-kill" && f[2] == missing.to_string())
        .expect("the failing kill's end");
    assert_eq!(
        failed[3],
        (vmpool::ffi::result::vmpool_result::VMPOOL_RESULT_NOT_FOUND as u32).to_string()
    );
    // The acquire's steps, in its order, under its id, each with a duration.
    let steps: Vec<_> = fired(&lines, "T")
        .into_iter()
        .filter(|f| f[0] == ids["pool-acquire"])
        .collect();
    let names: Vec<&str> = steps.iter().map(|f| f[1]).collect();
    let want: Vec<&str> = got.steps.iter().map(|(n, _)| *n).collect();
    assert_eq!(names, want, "{lines:#?}");
    assert!(steps.iter().all(|f| f[2].parse::<u64>().is_ok()));
    // Its QMP commands (the console ticket), under its id, answered.
    let qmp: Vec<_> = fired(&lines, "Q")
        .into_iter()
        .filter(|f| f[0] == ids["pool-acquire"])
        .collect();
    assert!(
        qmp.iter().any(|f| f[1] == "set_password" && f[2] == "1"),
        "{lines:#?}"
    );
    assert!(qmp.iter().all(|f| f[3].parse::<u64>().unwrap() > 0));

    // What the shipped scripts print: the acquire's steps and total, the QMP commands, the
    // refill's beginning and end.
    let [steps_out, qmp_out, refill_out] = &shipped_out[..] else {
        unreachable!()
    };
    for step in &want {
        assert!(
            steps_out.contains(&format!("@step_us[{step}]:")),
            "{step}: {steps_out}"
        );
    }
    assert!(steps_out.contains("@acquire_ms:"), "{steps_out}");
    assert!(qmp_out.contains("@calls[set_password]:"), "{qmp_out}");
    assert!(qmp_out.contains("longest single call"), "{qmp_out}");
    assert!(
        refill_out.contains("of pool probed begins")
            && refill_out.contains(": spare in ")
            && refill_out.contains("of pool probed ends: code 0"),
        "{refill_out}"
    );
}
